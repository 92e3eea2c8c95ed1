"""Authentication: JWT validation (`auth/validator`), the key sets it checks signatures with, and token claims;
JWT signing of response fields (`auth/signer`); OAuth2 client credentials for backend calls
(`auth/client-credentials`)."""
