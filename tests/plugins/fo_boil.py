"""A method declared outside the package: first-order BOIL (Oh et al., 2021, "body only update in
inner loop"), whose inner loop adapts the representation and keeps the head fixed, the outer
gradient taken at the adapted point. Nothing in metarep names it: importing this module registers
it, and metarep.train, reproduce series and MetaLearner run it through the functional engine."""

from metarep.methods.registry import MethodSpec, register

SPEC = register(MethodSpec(name="fo_boil", label="FO-BOIL", kind="meta", adapts="features", order="first"))
