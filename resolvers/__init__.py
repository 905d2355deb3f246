"""What each GraphQL field does: per-request DataLoaders, choosing stored vs live, provenance.

Installed as ``neuron_explainer.resolvers`` (the folder stays at the top of the repository).
"""
