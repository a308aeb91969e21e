"""Personal data protection: ID numbers and phones are never stored or shown in clear."""
