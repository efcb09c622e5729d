"""mobilenas: platform-aware neural architecture search (MnasNet's search, NetAdapt's pruning).

Data flows one way through the subpackages, each usable from Python as from its command:

* :mod:`mobilenas.space`: what a network is (``Architecture``, the ``mnasnet`` and
  ``mobilenetv3`` search spaces, the reference networks, the builder, MACs and parameters);
  ``mobilenas show``.
* :mod:`mobilenas.latency`: what it costs on a device (end-to-end measurement, lookup tables and
  their correction, calibration); ``nas-latency``.
* :mod:`mobilenas.train`: how good it is (data sets, proxy and full training); ``nas-train``.
* :mod:`mobilenas.search`: find one (rewards, the PPO controller and other strategies, runs on
  Ray Tune or tabular benchmarks); ``nas-search``.
* :mod:`mobilenas.netadapt`: refine one under a latency budget; ``netadapt refine``.
* :mod:`mobilenas.results`: show them (runs as DataFrames, fronts, comparisons, plots);
  ``nas-results`` and the notebooks.
"""
from __future__ import annotations

__version__ = "0.1.0"
