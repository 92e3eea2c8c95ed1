# lambdagate: KrakenD-format API gateway for AWS Lambda and HTTP services.
# Config is mounted at /etc/lambdagate (as KrakenD mounts /etc/krakend); AWS credentials come from AWS_* env
# variables, a role (IRSA/ECS/EC2), or a read-only ~/.aws mount at /home/lambdagate/.aws.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --create-home --uid 10001 lambdagate

USER lambdagate
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/__health', timeout=2)"
ENTRYPOINT ["lambdagate"]
CMD ["run", "-c", "/etc/lambdagate/krakend.json", "--log-format", "json"]
