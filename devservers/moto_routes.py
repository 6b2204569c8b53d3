"""The routes devservers.moto_server adds to moto's S3 server (no imports: the compose stand-in image has devservers/ alone)."""

# S3Server.put_objects: many objects of one body in one request (benches' seeding).
PUT_OBJECTS_PATH = "/_devservers/put-objects"
