"""The wire formats clients speak, as plain types: a leaf package that the HTTP layer and the core share.

Neither `router.api` nor `router.dispatch` owns these types, so the core never imports the HTTP layer
and each client dialect can get its own module here, beside its translator.
"""
