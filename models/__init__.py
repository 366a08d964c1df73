"""Components of the SEDGE model (spec likelihoods, feature priors); filled by later issues."""
