"""Device transports behind one narrow interface (base.py); ZK binary protocol in zk.py."""
