"""The predictor: FastAPI app, request models from the signature, model hot swap, metrics."""
