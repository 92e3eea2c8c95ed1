"""Authentication: JWT validation (`auth/validator`), the key sets it checks signatures with, and token claims."""
