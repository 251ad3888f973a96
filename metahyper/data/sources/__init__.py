"""Cache builders (``metahyper prepare``): one module per source format; what they share is in
:mod:`metahyper.data.sources.common`, the datasets they build are registered in
:mod:`metahyper.data.registry`."""
