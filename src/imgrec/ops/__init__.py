"""Operating a deployment from any host with its settings: the model through the store
(`imgrec model push` / `pull`) and one view of every part (`imgrec status`)."""
