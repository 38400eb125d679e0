"""What signing one URL costs, by kind: canned RSA-2048 (SHA-1, SHA-256), canned ECDSA P-256
(SHA-1, SHA-256), and a wildcard policy, whose per-URL cost is appending the cached
parameters plus one signature a second shared by every request.

Each kind signs the same 1,000 distinct URLs in a loop, `--rounds` times; the medians of
CPU time per URL (process time, one thread) are reported.

    python benchmarks/signing_cost.py [--urls 2000] [--rounds 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tfbulk.signing.cloudfront import CloudFrontSigner, PolicySigner
from tfbulk.signing.policy import ResourcePattern

KEY_ID = "KBENCHSIGNING"
BASE = "https://d2kum0w8xvhbpf.cloudfront.net/truefire"
URLS = [f"{BASE}/{1000 + i}.mp4" for i in range(1000)]
NOW = 1_767_225_600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2000, help="URLs signed per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    shared = PolicySigner(rsa_key, KEY_ID, 600.0, ResourcePattern(f"{BASE}/*"))
    kinds: dict[str, Callable[[str], str]] = {
        "canned RSA-2048 SHA-1": _per_url(CloudFrontSigner(rsa_key, KEY_ID, 600.0)),
        "canned RSA-2048 SHA-256": _per_url(CloudFrontSigner(rsa_key, KEY_ID, 600.0, "SHA256")),
        "canned ECDSA P-256 SHA-1": _per_url(CloudFrontSigner(ec_key, KEY_ID, 600.0)),
        "canned ECDSA P-256 SHA-256": _per_url(CloudFrontSigner(ec_key, KEY_ID, 600.0, "SHA256")),
        "wildcard policy (append)": lambda url: shared.sign(url, NOW),
    }
    medians = {name: _median_us(sign, args.urls, args.rounds) for name, sign in kinds.items()}
    resign = medians["canned RSA-2048 SHA-1"] / 1e6  # one RSA signature a second, in s/s
    if args.json:
        print(json.dumps({"us_per_url": medians, "wildcard_resign_core_share": resign}))
        return
    for name, micros in medians.items():
        print(f"{name:28} {micros:9.2f} µs/URL  ({1e6 / micros:>12,.0f} URLs/s a core)")
    print(f"wildcard re-signing once a second (RSA): {resign:.3%} of a core, however many URLs")


def _per_url(signer: CloudFrontSigner) -> Callable[[str], str]:
    return lambda url: signer.sign(url, NOW)


def _median_us(sign: Callable[[str], str], count: int, rounds: int) -> float:
    """Median over rounds of CPU µs per signed URL."""
    urls = [URLS[i % len(URLS)] for i in range(count)]
    sign(urls[0])  # warm-up: the wildcard signer makes its one signature here
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for url in urls:
            sign(url)
        samples.append((time.process_time() - started) / count * 1e6)
    return statistics.median(samples)


if __name__ == "__main__":
    main()
