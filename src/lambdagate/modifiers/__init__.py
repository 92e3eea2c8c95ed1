"""Request and response modifiers applied to a backend's HTTP exchange (KrakenD's `modifier/martian`)."""
