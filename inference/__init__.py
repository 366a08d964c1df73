"""Fitting and samplers; filled by later issues."""
