"""The HTTP surface: request parsing, handlers, error mapping. Thin: the work happens in `router.dispatch`."""
