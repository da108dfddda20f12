"""`python -m bench` (`make bench`): the performance figures, with targets, side by side in one run."""
