"""SageMaker hosting for both images: ``IMAGE serve`` answers ``GET /ping`` and ``POST /invocations``.

* :mod:`container.serving.protocol` - the request and response contract (content types, thresholds,
  limits, errors), one for both images, framework-free;
* :mod:`container.serving.app` - the WSGI application: routes, the model loaded once per worker,
  ``/ping`` healthy only once it is;
* :mod:`container.serving.server` - gunicorn with the SageMaker settings (port, workers, time-outs);
* each image's adapter (``container/yolo/serve.py``, ``container/tfod/serve.py``): ``load(model_dir)``
  returns a :class:`container.serving.protocol.Predictor`.

Nothing here imports a framework: the adapter does, in the worker, once.
"""
