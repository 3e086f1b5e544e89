"""Training data: file formats, normalisation, selection (dedup, filters, split) and RAG rendering.

Contract: every loader returns the internal forms of `training.data.records` (`ChatExample` for SFT/PSFT,
`PreferenceExample` for DPO); malformed input raises `DataValidationError` naming the file, the record index and the
field.
"""
