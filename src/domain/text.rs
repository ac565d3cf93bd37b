//! Free-text fields users type: names and vehicle descriptions.

use super::ValidationError;

fn clean(raw: &str, field: &str, max: usize) -> Result<String, ValidationError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(format!("{field} must not be empty")));
    }
    if trimmed.chars().count() > max {
        return Err(ValidationError::new(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ValidationError::new(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(trimmed.to_string())
}

/// A person's display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        clean(raw, "name", 200).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A vehicle as the user describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleSpec {
    pub brand: String,
    pub model: String,
    pub battery_capacity_kwh: Option<f64>,
}

impl VehicleSpec {
    pub fn parse(
        brand: &str,
        model: &str,
        battery_capacity_kwh: Option<f64>,
    ) -> Result<Self, ValidationError> {
        let brand = clean(brand, "brand", 100)?;
        let model = clean(model, "model", 100)?;
        if let Some(capacity) = battery_capacity_kwh {
            if !capacity.is_finite() || capacity <= 0.0 || capacity > 1000.0 {
                return Err(ValidationError::new(
                    "batteryCapacity must be between 0 and 1000 kWh",
                ));
            }
        }
        Ok(Self {
            brand,
            model,
            battery_capacity_kwh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("  Ada  ")
                .map(|n| n.as_str().to_string())
                .ok(),
            Some("Ada".into())
        );
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn vehicle_capacity_must_be_plausible() {
        assert!(VehicleSpec::parse("Tesla", "Model 3", Some(75.0)).is_ok());
        assert!(VehicleSpec::parse("Tesla", "Model 3", Some(-1.0)).is_err());
        assert!(VehicleSpec::parse("Tesla", "Model 3", Some(f64::NAN)).is_err());
        assert!(VehicleSpec::parse("", "Model 3", None).is_err());
    }
}
