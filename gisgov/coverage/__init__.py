"""Service circles (便民服务圈): catalog, distances, coverage figures, service areas, siting, what-if.

Pure computation lives in catalog / model / figures / areas / siting / whatif; PostGIS I/O only in
``store``; ``service`` ties them together for the CLI and the API.
"""
