"""Real data in and out: files, rosters and OpenStreetMap into PostGIS (validated, all or nothing), exports.

Entry points: :func:`gisgov.ingest.loader.load_file` (any level, any supported file),
:func:`gisgov.ingest.roster.load_roster`, :func:`gisgov.ingest.osm.load_osm`,
:func:`gisgov.ingest.export.export_level`.
"""
