from cellflux.plugin import Command, PluginManifest

manifest = PluginManifest(
    name="dummy",
    distribution="cellflux-dummy-plugin",
    module="cellflux_dummy",
    tl={"dummy_score": "cellflux_dummy._tools:dummy_score"},
    pp={"dummy_log1p": "cellflux_dummy._tools:dummy_log1p"},
    pl={"dummy_score": "cellflux_dummy._plots:dummy_score"},
    commands={"dummy": Command("cellflux_dummy._cli:main", help="say hello from the dummy plugin")},
    examples={
        "tl.dummy_score": "cellflux_dummy._examples:dummy_score",
        "pp.dummy_log1p": "cellflux_dummy._examples:dummy_log1p",
    },
)
