"""neuron-explainer: the domain core. Plain Python + torch; knows nothing of GraphQL."""
