"""One module per landed file format, each bringing its records to the parsed layout."""
