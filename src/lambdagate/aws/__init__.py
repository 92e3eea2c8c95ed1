"""AWS building blocks with no gateway knowledge: SigV4 signing (``sigv4``), credential and
region resolution (``credentials``) and the Lambda Invoke client (``invoke``)."""
