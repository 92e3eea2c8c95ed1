"""Request validation namespaces: `validation/cel` (CEL checks) and `validation/json-schema` (request bodies).

Both compile what they need once, when the config is read (so `lambdagate check` refuses an expression or a schema
that does not compile), and are composed into the request path only where configured.
"""
