"""Security tests: keys and their scopes, rate limits, admin and status protection, HTTP limits, CORS,
secret hygiene and upstream pinning, all against the real router on loopback sockets."""
