"""FeatureViews: declarative features, point-in-time joins, offline and online stores."""
