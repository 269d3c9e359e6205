"""The toy method's config section."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ToyConfig(BaseModel):
    """One convolution from the noisy to the clean image."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: Literal["toy"] = "toy"
    kernel: Annotated[int, Field(ge=1, le=9)] = 3
