"""Security plumbing that is no part of the catalogue: API throttles, the
failed-authentication limit, the login lockout and the shared cache they use."""
