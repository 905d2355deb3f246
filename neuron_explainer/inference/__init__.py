"""Live inference: requests, the batching engine that owns the model, and what live fields compute.

Import the modules themselves (``inference.engine``, ``inference.requests``, ``inference.live``): this
package imports nothing, so the torch-free ones (``values``, ``backend``) stay torch-free.
"""
