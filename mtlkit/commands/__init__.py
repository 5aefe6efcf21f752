"""One module per ``mtlkit`` sub-command (``add_parser`` + ``run``)."""
