"""CPython-only harness: brokers, databases, proxies, fake boards, simulators, soak. Never bundled."""
