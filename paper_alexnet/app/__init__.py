"""The `alexnet` command: the verb dispatcher (`cli`), `alexnet config` (`show_config`) and
`alexnet summary` (`summary`). The library below it raises and never exits."""
