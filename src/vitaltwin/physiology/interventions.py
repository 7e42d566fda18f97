"""The interventions of vitaltwin's physiology: what a scenario or a what-if plan can do.

Each is a :class:`vitaltwin.model.Intervention` (JSON with a ``type`` tag, validated) that turns
itself into changes of the inputs the physiology's components declare (haemorrhage and infusion
rates, pathogen inoculum, norepinephrine, meropenem, FiO2) or into a parameter change. Scenarios
(:mod:`vitaltwin.simulate.scenario`) and the ward twin's what-if
(:class:`vitaltwin.physiology.WardPlan`) use the same classes.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from vitaltwin.model import (
    InputChange,
    Intervention,
    InterventionContext,
    InterventionError,
    ParameterSetting,
)


class ParameterChange(ParameterSetting):
    """Set a parameter to ``value`` or multiply its current value by ``factor``."""

    factor: Annotated[float, Field(gt=0)] | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ParameterChange:
        if (self.value is None) == (self.factor is None):
            raise ValueError("give exactly one of 'value' or 'factor'")
        return self


def _until(a: Intervention, duration_s: float | None) -> float | None:
    return None if duration_s is None else a.at_s + duration_s


class Hemorrhage(Intervention):
    """Blood loss over ``duration_s`` given as a rate, a volume, or a fraction of blood volume."""

    type: Literal["hemorrhage"]
    at_s: Annotated[float, Field(ge=0)]
    duration_s: Annotated[float, Field(gt=0)]
    rate_ml_min: Annotated[float, Field(gt=0)] | None = None
    volume_ml: Annotated[float, Field(gt=0)] | None = None
    fraction_of_blood_volume: Annotated[float, Field(gt=0, le=0.6)] | None = None
    needs_inputs: ClassVar[tuple[str, ...]] = ("hemorrhage_ml_s",)

    @model_validator(mode="after")
    def _one_of(self) -> Hemorrhage:
        given = [self.rate_ml_min, self.volume_ml, self.fraction_of_blood_volume]
        if sum(v is not None for v in given) != 1:
            raise ValueError(
                "give exactly one of 'rate_ml_min', 'volume_ml', 'fraction_of_blood_volume'"
            )
        return self

    def rate_ml_s(self, blood_volume_ml: float) -> float:
        if self.rate_ml_min is not None:
            return self.rate_ml_min / 60.0
        vol = (
            self.volume_ml
            if self.volume_ml is not None
            else (float(self.fraction_of_blood_volume or 0.0) * blood_volume_ml)
        )
        return vol / self.duration_s

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        r = self.rate_ml_s(ctx.blood_volume_ml)
        return [InputChange(self.at_s, _until(self, self.duration_s), "hemorrhage_ml_s", r, "add")]

    def describe(self, ctx: InterventionContext) -> str:
        r = self.rate_ml_s(ctx.blood_volume_ml)
        return f"blood loss {r * 60:.0f} mL/min for {self.duration_s:g} s"


class FluidBolus(Intervention):
    """A crystalloid bolus of ``volume_ml`` given evenly over ``duration_s``."""

    type: Literal["fluid_bolus"]
    at_s: Annotated[float, Field(ge=0)]
    volume_ml: Annotated[float, Field(gt=0, le=5000)]
    duration_s: Annotated[float, Field(gt=0)] = 600.0
    needs_inputs: ClassVar[tuple[str, ...]] = ("infusion_ml_s",)

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        rate = self.volume_ml / self.duration_s
        return [InputChange(self.at_s, _until(self, self.duration_s), "infusion_ml_s", rate, "add")]

    def describe(self, ctx: InterventionContext) -> str:
        return f"{self.volume_ml:g} mL over {self.duration_s:g} s"


class FluidInfusion(Intervention):
    """A continuous infusion at ``rate_ml_h``, for ``duration_s`` or to the end."""

    type: Literal["fluid_infusion"]
    at_s: Annotated[float, Field(ge=0)]
    rate_ml_h: Annotated[float, Field(gt=0, le=10000)]
    duration_s: Annotated[float, Field(gt=0)] | None = None
    needs_inputs: ClassVar[tuple[str, ...]] = ("infusion_ml_s",)

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        rate = self.rate_ml_h / 3600.0
        return [InputChange(self.at_s, _until(self, self.duration_s), "infusion_ml_s", rate, "add")]

    def describe(self, ctx: InterventionContext) -> str:
        return f"{self.rate_ml_h:g} mL/h"


class SetParameter(Intervention, ParameterChange):
    """Change a parameter (contractility, resistance, ...) at ``at_s`` and keep it."""

    type: Literal["set_parameter"]
    at_s: Annotated[float, Field(ge=0)]

    def parameter_change(self) -> ParameterChange:
        return self

    def describe(self, ctx: InterventionContext) -> str:
        how = f"= {self.value:g}" if self.value is not None else f"x {self.factor:g}"
        return f"{self.parameter} {how}"


class Infection(Intervention):
    """Infection onset: ``severity`` units of pathogen (Reynolds et al. 2006 units) inoculated
    over ``duration_s`` (ward fidelity). 2 gives septic shock without treatment."""

    type: Literal["infection"]
    at_s: Annotated[float, Field(ge=0)]
    severity: Annotated[float, Field(gt=0, le=10)]
    duration_s: Annotated[float, Field(gt=0)] = 600.0
    needs_inputs: ClassVar[tuple[str, ...]] = ("pathogen_inoculum_per_h",)

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        r = self.severity / (self.duration_s / 3600.0)
        until = _until(self, self.duration_s)
        return [InputChange(self.at_s, until, "pathogen_inoculum_per_h", r, "add")]

    def describe(self, ctx: InterventionContext) -> str:
        return f"pathogen inoculum {self.severity:g} over {self.duration_s:g} s"


class NorepinephrineDose(Intervention):
    """Norepinephrine at a fixed rate from ``at_s`` (for ``duration_s`` or to the end), added to
    any other norepinephrine running."""

    type: Literal["norepinephrine"]
    at_s: Annotated[float, Field(ge=0)]
    rate_ug_kg_min: Annotated[float, Field(ge=0, le=3)]
    duration_s: Annotated[float, Field(gt=0)] | None = None
    needs_inputs: ClassVar[tuple[str, ...]] = ("ne_rate_ug_kg_min",)

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        until = _until(self, self.duration_s)
        return [InputChange(self.at_s, until, "ne_rate_ug_kg_min", self.rate_ug_kg_min, "add")]

    def describe(self, ctx: InterventionContext) -> str:
        return f"{self.rate_ug_kg_min:g} ug/kg/min"


class NorepinephrineRate(Intervention):
    """The norepinephrine pump set to ``rate_ug_kg_min`` from ``at_s`` to the end, replacing
    whatever was running (a what-if plan's "norepinephrine at 0.2")."""

    type: Literal["norepinephrine_rate"]
    at_s: Annotated[float, Field(ge=0)]
    rate_ug_kg_min: Annotated[float, Field(ge=0, le=3)]
    needs_inputs: ClassVar[tuple[str, ...]] = ("ne_rate_ug_kg_min",)

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        return [InputChange(self.at_s, None, "ne_rate_ug_kg_min", self.rate_ug_kg_min, "set")]

    def describe(self, ctx: InterventionContext) -> str:
        return f"norepinephrine {self.rate_ug_kg_min:g} ug/kg/min"


class NorepinephrineTitration(Intervention):
    """Start a protocol that titrates norepinephrine to a MAP target (ward fidelity)."""

    type: Literal["norepinephrine_titration"]
    at_s: Annotated[float, Field(ge=0)]
    target_map_mmhg: Annotated[float, Field(ge=50, le=100)] = 65.0
    max_ug_kg_min: Annotated[float, Field(gt=0, le=3)] = 1.0
    duration_s: Annotated[float, Field(gt=0)] | None = None
    needs_inputs: ClassVar[tuple[str, ...]] = ("ne_target_map_mmhg", "ne_max_ug_kg_min")

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        until = _until(self, self.duration_s)
        return [
            InputChange(self.at_s, until, "ne_target_map_mmhg", self.target_map_mmhg, "set"),
            InputChange(self.at_s, until, "ne_max_ug_kg_min", self.max_ug_kg_min, "set"),
        ]

    def describe(self, ctx: InterventionContext) -> str:
        return f"to MAP {self.target_map_mmhg:g}, max {self.max_ug_kg_min:g}"


class AntibioticDose(Intervention):
    """Meropenem ``dose_mg`` infused over ``infusion_min``, repeated ``every_h`` if given."""

    type: Literal["antibiotic"]
    at_s: Annotated[float, Field(ge=0)]
    dose_mg: Annotated[float, Field(gt=0, le=6000)] = 1000.0
    infusion_min: Annotated[float, Field(gt=0, le=240)] = 30.0
    every_h: Annotated[float, Field(gt=0, le=48)] | None = 8.0
    needs_inputs: ClassVar[tuple[str, ...]] = ("abx_rate_mg_h",)

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        rate = self.dose_mg / (self.infusion_min / 60.0)
        out = []
        t_dose = self.at_s
        while t_dose < ctx.end_s:
            out.append(
                InputChange(t_dose, t_dose + 60.0 * self.infusion_min, "abx_rate_mg_h", rate, "add")
            )
            if self.every_h is None:
                break
            t_dose += 3600.0 * self.every_h
        return out

    def describe(self, ctx: InterventionContext) -> str:
        every = "" if self.every_h is None else f", every {self.every_h:g} h"
        return f"meropenem {self.dose_mg:g} mg over {self.infusion_min:g} min{every}"


class Oxygen(Intervention):
    """Set the inspired O2 fraction from ``at_s`` (ward fidelity)."""

    type: Literal["oxygen"]
    at_s: Annotated[float, Field(ge=0)]
    fio2: Annotated[float, Field(ge=0.21, le=1.0)]
    needs_inputs: ClassVar[tuple[str, ...]] = ("fio2",)

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        return [InputChange(self.at_s, None, "fio2", self.fio2, "set")]

    def describe(self, ctx: InterventionContext) -> str:
        return f"FiO2 {self.fio2:g}"


__all__ = [
    "Action",
    "AntibioticDose",
    "FluidBolus",
    "FluidInfusion",
    "Hemorrhage",
    "Infection",
    "InterventionError",
    "NorepinephrineDose",
    "NorepinephrineRate",
    "NorepinephrineTitration",
    "Oxygen",
    "ParameterChange",
    "SetParameter",
]

Action = Annotated[
    Hemorrhage
    | FluidBolus
    | FluidInfusion
    | SetParameter
    | Infection
    | NorepinephrineDose
    | NorepinephrineRate
    | NorepinephrineTitration
    | AntibioticDose
    | Oxygen,
    Field(discriminator="type"),
]
"""Any intervention, read from JSON by its ``type``."""
