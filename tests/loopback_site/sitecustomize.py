"""Test harness only (never in the product): peers in this interpreter use loopback ICE.

tests/live.py puts this folder on the PYTHONPATH of every `facecast serve` the
tests and benchmarks start, so the server under test gathers only 127.0.0.1
host candidates; aioice would otherwise skip 127.0.0.1 and offer the machine's
external interfaces. Kept free of project imports: it runs before sys.path has
the checkout on it.
"""

try:
    import aioice.ice
except ImportError:  # not an aiortc process: nothing to do
    pass
else:

    def _loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = _loopback_only
