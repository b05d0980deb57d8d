"""Pure parsers for musubi-tuner's console output (filled in by the parsers work)."""
