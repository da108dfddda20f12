"""Dev-only: run the function app locally with Python alone (a Functions host and a Kaizala stand-in).

Not deployed (see .funcignore). `python -m devserver` starts both; `python -m devserver.kaizala` the stand-in alone.
"""
