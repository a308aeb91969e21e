"""Background analysis jobs (table ``analysis_job``)."""
