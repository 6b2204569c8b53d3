"""The drill's minio-setup: the private bucket, as deploy/compose/minio/setup makes it, on moto's S3 server.

moto has no admin API, so the application's bucket-only user and policy are not made (nor enforced).
"""

import os

import boto3

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ.get("MINIO_URL", "http://minio:9000"),
    aws_access_key_id=os.environ.get("MINIO_ROOT_USER", "drill"),
    aws_secret_access_key=os.environ.get("MINIO_ROOT_PASSWORD", "drill"),
    region_name="us-east-1",
)
bucket = os.environ["AWS_STORAGE_BUCKET_NAME"]
if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
    s3.create_bucket(Bucket=bucket)
print(f"minio-setup (drill): bucket {bucket} ready", flush=True)
