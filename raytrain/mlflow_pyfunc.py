"""MLflow's "model from code" of a raytrain model (raytrain/models.py writes it): the file MLflow copies into every
logged model and runs to get the pyfunc, instead of unpickling one."""

import os
from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np

from raytrain.models import payload_from_dir


class RaytrainModel(mlflow.pyfunc.PythonModel):
    """A raytrain restorer (or SeNM-VAE noise model) behind MLflow's pyfunc: ``predict`` takes and returns
    (N, H, W, C) float32 batches in [0, 1], on a CUDA GPU when torch sees one (``RAYTRAIN_DEVICE``: another)."""

    def load_context(self, context):
        from raytrain.inference import method_from_payload, resolve_device

        self.device = resolve_device(os.environ.get("RAYTRAIN_DEVICE", "auto"))
        payload = payload_from_dir(Path(context.artifacts["weights"]).parent)
        self.cfg, self.method = method_from_payload(payload, self.device, "mlflow model")

    def predict(self, context, model_input: np.ndarray, params=None):  # ndarray: MLflow validates by the signature
        import torch

        if isinstance(model_input, dict):  # a named tensor input arrives as {name: array}
            (model_input,) = model_input.values()
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32)).permute(0, 3, 1, 2).to(self.device)
        m = self.cfg.method
        with torch.no_grad():
            if self.method.restores:
                y = self.method.restore(x)
            else:
                from raytrain.synthesis import synthesis_temperature  # "auto": the calibrated one

                t = synthesis_temperature(self.method, m.temperature)
                y = self.method.synthesize(x, None, t, m.synthesis, m.content, m.normalize)
        return y.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


mlflow.models.set_model(RaytrainModel())
