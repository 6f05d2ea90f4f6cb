"""`make demo`: the whole stack on this machine, results live in the terminal."""
