"""Browser and request policies of the KrakenD `security/*` namespaces: CORS, HTTP security headers and host
checks, and the bot detector. Each module holds its namespace's config model and its front step."""
