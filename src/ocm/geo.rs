//! Spherical geometry for station search: exact great-circle distances (haversine) and the
//! mapping of points onto the unit sphere in 3D (ECEF). On the sphere, straight-line (chord)
//! distance grows strictly with great-circle distance, so a 3D index ordered by chord distance
//! is ordered by great-circle distance too — with no seam at the antimeridian and no
//! distortion near the poles, unlike an index over raw (lat, lon).

/// Mean Earth radius (IUGG R1), in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A validated WGS84 position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    latitude: f64,
    longitude: f64,
}

impl GeoPoint {
    /// Accepts finite latitudes in [-90, 90] and longitudes in [-180, 180].
    pub fn new(latitude: f64, longitude: f64) -> Option<Self> {
        let valid = latitude.is_finite()
            && longitude.is_finite()
            && (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude);
        valid.then_some(Self {
            latitude,
            longitude,
        })
    }

    /// Like [`GeoPoint::new`], and also refuses (0, 0): "Null Island" is what a missing position
    /// looks like in OCM data, never a charging station.
    pub fn plausible_station(latitude: f64, longitude: f64) -> Option<Self> {
        Self::new(latitude, longitude).filter(|_| !(latitude == 0.0 && longitude == 0.0))
    }

    pub fn latitude(&self) -> f64 {
        self.latitude
    }

    pub fn longitude(&self) -> f64 {
        self.longitude
    }

    /// The point on the unit sphere, Earth-centred, Earth-fixed.
    pub fn to_unit_vector(self) -> [f64; 3] {
        let (lat, lon) = (self.latitude.to_radians(), self.longitude.to_radians());
        [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
    }

    /// Great-circle distance in km (haversine, numerically stable for small distances).
    pub fn distance_km(self, other: GeoPoint) -> f64 {
        haversine_km(
            self.latitude,
            self.longitude,
            other.latitude,
            other.longitude,
        )
    }
}

/// Great-circle distance in km between two (lat, lon) positions in degrees.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// The squared chord length on the unit sphere that corresponds to a great-circle distance;
/// distances beyond half the circumference map to the diameter (4 = 2²).
pub fn chord_squared_for_km(distance_km: f64) -> f64 {
    let angle = (distance_km / EARTH_RADIUS_KM).clamp(0.0, std::f64::consts::PI);
    let chord = 2.0 * (angle / 2.0).sin();
    chord * chord
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).unwrap_or(GeoPoint {
            latitude: f64::NAN,
            longitude: f64::NAN,
        })
    }

    #[test]
    fn rejects_out_of_range_and_non_finite_positions() {
        assert!(GeoPoint::new(91.0, 0.0).is_none());
        assert!(GeoPoint::new(0.0, -180.5).is_none());
        assert!(GeoPoint::new(f64::NAN, 0.0).is_none());
        assert!(GeoPoint::new(90.0, 180.0).is_some());
        assert!(GeoPoint::plausible_station(0.0, 0.0).is_none());
        assert!(GeoPoint::plausible_station(0.0, 0.1).is_some());
    }

    #[test]
    fn haversine_matches_known_distances() {
        // London -> Paris is about 343.5 km on the mean sphere
        let d = point(51.5074, -0.1278).distance_km(point(48.8566, 2.3522));
        assert!((d - 343.5).abs() < 1.0, "{d}");
        // across the antimeridian: 0.2 degrees of longitude on the equator
        let d = point(0.0, 179.9).distance_km(point(0.0, -179.9));
        assert!((d - 22.239).abs() < 0.01, "{d}");
        // a quarter of a meridian
        let d = point(0.0, 0.0).distance_km(point(90.0, 0.0));
        assert!((d - EARTH_RADIUS_KM * std::f64::consts::FRAC_PI_2).abs() < 1e-6);
    }

    #[test]
    fn chord_and_great_circle_agree() {
        let a = point(45.0, 179.95);
        let b = point(45.2, -179.8);
        let (va, vb) = (a.to_unit_vector(), b.to_unit_vector());
        let chord2: f64 = va.iter().zip(vb).map(|(x, y)| (x - y).powi(2)).sum();
        let expected = chord_squared_for_km(a.distance_km(b));
        assert!((chord2 - expected).abs() < 1e-12, "{chord2} vs {expected}");
        assert_eq!(chord_squared_for_km(1.0e9), 4.0);
    }
}
