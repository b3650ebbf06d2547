"""Spike streams for the simulation of neuromorphic hardware.

Hardware sees events as discrete timesteps, address-event words and input
budgets per step and per core. This package turns event/spike columns into
those forms and measures what it cost:

- :mod:`~neurodata.hardware.quantize`: time quantisation to a timestep with a
  per-step (per-core) input budget and a stated overflow policy;
- :mod:`~neurodata.hardware.aer`: address-event words with configurable
  layouts, to and from byte buffers and files;
- :mod:`~neurodata.hardware.simulators`: rasters and spike-source inputs for
  Brian2, NEST, PyNN/sPyNNaker, Lava and Sinabs/Speck;
- :mod:`~neurodata.hardware.workload`: event rates, sparsity, peak load and
  synaptic-operation counts per sample and per batch.
"""
from neurodata.hardware.aer import AERLayout, AERDecoder, decode_aer, encode_aer, read_aer, write_aer
from neurodata.hardware.quantize import QuantizeReport, dequantize, flat_address, quantize
from neurodata.hardware.workload import workload_stats

__all__ = [
    "AERLayout",
    "AERDecoder",
    "encode_aer",
    "decode_aer",
    "read_aer",
    "write_aer",
    "QuantizeReport",
    "quantize",
    "dequantize",
    "flat_address",
    "workload_stats",
]
