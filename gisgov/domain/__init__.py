"""Domain constants and pure rules shared across gisgov (no database, no I/O)."""
