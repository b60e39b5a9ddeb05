"""The parts of ``python -m eid_auth.demo``, one module each: ``sign_in`` (a person
on another device, then in a browser), ``fleet`` (processes sharing one token file,
for any grant) and ``tour`` (one auth object across clients, expiries, a 401 and a
crowd); ``narration`` prints the lines. Not imported by ``import eid_auth``.
"""

# Seconds an access token of the demo's server lives: short, so that the demo
# meets several expiries in a few seconds.
LIFETIME = 4
