"""Local servers for tests, benchmarks and demos: moto's S3 server and a fake photo API."""
