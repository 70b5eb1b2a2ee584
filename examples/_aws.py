"""For the examples: AWS as boto3 finds it, or a moto server started here on 127.0.0.1 (--moto).

moto speaks the real wire protocol; nothing leaves this machine. It records pipelines, rules and
tuning jobs but runs nothing, so the examples say what SageMaker would do next.
"""

import logging
import os
import socket
from contextlib import contextmanager

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-yolo:v1"


@contextmanager
def aws(use_moto: bool):
    if not use_moto:
        yield None
        return
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    print(f"moto server on http://127.0.0.1:{port} (AWS_ENDPOINT_URL)")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
