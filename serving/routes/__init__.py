"""HTTP routes: thin handlers that validate, delegate to a service and shape the response."""
