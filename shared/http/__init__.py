"""Talking to servers we do not control: `upstream` is the hardened HTTP client every upstream call goes through
(Kaizala's users/me, Entra ID's signing keys), `deadline` bounds a whole call by one deadline (retries and body
included), and `untrusted_json` is the one rule for parsing JSON someone else wrote (bodies, JWT payloads,
upstream answers). Import from the modules: this package re-exports nothing, so importing it loads no HTTP library.
"""
