"""Training recipes that read top to bottom over the pieces in minitf.train."""
