"""Explanations with their scores in peers' formats, both ways: Neuronpedia's explanation export and
delphi's per-latent result files (``neuron-explainer export`` / ``neuron-explainer import``)."""

from neuron_explainer.explanations.exchange.delphi import export_delphi, import_delphi
from neuron_explainer.explanations.exchange.neuronpedia import export_neuronpedia, import_neuronpedia
from neuron_explainer.explanations.exchange.rows import StoredRow, stored_rows

__all__ = ["StoredRow", "export_delphi", "export_neuronpedia", "import_delphi", "import_neuronpedia", "stored_rows"]
