"""`python -m bench` (`make bench`): the performance figures of issue 4, with targets, side by side in one run."""
